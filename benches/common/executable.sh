# Sourced by the benchmark scripts (benches/instructions, benches/profile).

# The path of a bench's executable, from cargo's JSON messages on stdin.
executable() {
    python3 -c 'import sys, json
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$1"
}
