#!/usr/bin/env python3
"""The file-level import graph of a crate's src/ (`crate::` and `super::` paths, grouped
`use` trees, names the crate root re-exports), and the circles in it. Exits 1 when there
is one: each concern has one owner, and nothing imports upward (STYLE.md, section 9).

    python3 .ci/imports.py zdd-core/src [-v]    # -v prints every file's imports

A parent declaring its child modules is not an import, and unit tests (`#[cfg(test)]
mod`) may use the crate from the top."""
import os, re, sys

root = sys.argv[1]  # e.g. zdd-core/src
files = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith('.rs'):
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)[:-3]
            parts = rel.split(os.sep)
            if parts[-1] in ('mod', 'lib') or (parts == ['main']):
                parts = parts[:-1]
            files[tuple(parts)] = p

reexports = {}
def module_file(path):
    # a name the crate root re-exports stands for the module that defines it
    if len(path) >= 1 and tuple(path[:1]) not in files and path[0] in reexports:
        path = reexports[path[0]] + path[1:]
    # longest prefix of path that is a file's module
    for n in range(len(path), -1, -1):
        if tuple(path[:n]) in files:
            return tuple(path[:n])
    return None

def strip_comments(src):
    src = re.sub(r'//[^\n]*', '', src)
    # unit tests (a `#[cfg(test)] mod` to the end of the file) use the crate from the top
    m = re.search(r'#\[cfg\(test\)\]\s*mod\s+\w+\s*\{', src)
    if m:
        src = src[:m.start()]
    return src

def expand(tree, prefix):
    # tree: text after 'crate::' possibly with {..}
    out = []
    tree = tree.strip()
    m = re.match(r'([A-Za-z_0-9:]*?)(::)?\{(.*)\}$', tree, re.S)
    if m and tree.endswith('}'):
        base = [p for p in m.group(1).split('::') if p]
        inner = m.group(3)
        depth, cur, items = 0, '', []
        for ch in inner:
            if ch == '{': depth += 1
            if ch == '}': depth -= 1
            if ch == ',' and depth == 0:
                items.append(cur); cur = ''
            else:
                cur += ch
        items.append(cur)
        for it in items:
            if it.strip():
                out += expand(it, prefix + base)
        return out
    path = [p for p in re.split(r'::', tree.split(' as ')[0]) if p and p != 'self']
    return [prefix + path]

lib = strip_comments(open(files[()]).read())
for m in re.finditer(r'pub(?:\(crate\))?\s+use\s+self::(.*?);', lib, re.S):
    for path in expand(m.group(1), []):
        if path:
            reexports[path[-1]] = path[:-1]
edges = {}
for mod, p in files.items():
    src = strip_comments(open(p).read())
    targets = set()
    for m in re.finditer(r'\buse\s+(crate|super)::(.*?);', src, re.S):
        kind, tree = m.group(1), m.group(2)
        base = [] if kind == 'crate' else list(mod[:-1] if not p.endswith(('mod.rs','lib.rs')) else mod[:-1])
        if kind == 'super':
            base = list(mod[:-1]) if not p.endswith('mod.rs') else list(mod[:-1])
        for path in expand(tree, base):
            t = module_file(path)
            if t is not None and t != mod:
                targets.add(t)
    for m in re.finditer(r'\bcrate::([a-z_][a-z_0-9]*(?:::[a-z_][a-z_0-9]*)*)', src):
        t = module_file(m.group(1).split('::'))
        if t is not None and t != mod:
            targets.add(t)
    edges[mod] = targets

# drop edges to the crate root (lib.rs re-exports) and from it
edges.pop((), None)
for k in edges:
    edges[k].discard(())

name = lambda m: '/'.join(m) or 'lib'
# cycles via Tarjan SCC
index, low, stack, on, sccs, i = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def strong(v):
    index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
    for w in edges.get(v, ()):
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(comp)
for v in list(edges):
    if v not in index: strong(v)
if '-v' in sys.argv:
    for k in sorted(edges):
        print(f"{name(k)} -> {', '.join(sorted(name(t) for t in edges[k]))}")
for c in sccs:
    print("CYCLE:", ' '.join(sorted(name(m) for m in c)))
print(f"{len(sccs)} cycle(s)")
sys.exit(1 if sccs else 0)
