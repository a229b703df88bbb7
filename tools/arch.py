"""Architecture figures of the product's Python packages, from their source alone (nothing is imported).

    python tools/arch.py            # print the figures
    python tools/arch.py --check    # also exit 1 if any import cycle exists between modules

Per module: lines, whether it imports web3 / SQLAlchemy / pynvml / httpx, and how many imports sit inside
functions. Import cycles are the strongly connected components of the module graph, counting every import
(module level, inside functions, and under ``if TYPE_CHECKING``): a cycle hidden from the interpreter is
still a cycle in the design.
"""

from __future__ import annotations

import argparse
import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("compute_ledger", "ledger", "api", "attestor", "auditor", "client/compute_ledger_client")
EXTERNAL = {"web3": ("web3", "eth_tester"), "sqlalchemy": ("sqlalchemy", "alembic"), "pynvml": ("pynvml",), "httpx": ("httpx",)}


# a contract call or a raw web3 handle: `.functions.`, `.w3.` / `w3.eth`
_CHAIN_CALL = re.compile(r"\.functions\.|(?<![\w.])w3\.eth|\.w3\.eth")


def module_name(path: Path) -> str:
    # a package in a folder of its own (client/compute_ledger_client) is named from that folder
    base = ROOT / "client" if path.is_relative_to(ROOT / "client") else ROOT
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def scan() -> tuple[dict[str, dict[str, object]], dict[str, set[str]]]:
    info: dict[str, dict[str, object]] = {}
    edges: dict[str, set[str]] = defaultdict(set)
    files = [p for pkg in PACKAGES if (ROOT / pkg).is_dir() for p in sorted((ROOT / pkg).rglob("*.py"))]
    modules = {module_name(p) for p in files}
    for path in files:
        mod = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets: list[tuple[str, bool]] = []  # (imported name, inside a function)

        def visit(node: ast.AST, in_func: bool) -> None:
            for child in ast.iter_child_nodes(node):
                f = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                if isinstance(child, ast.Import):
                    targets.extend((a.name, f) for a in child.names)
                elif isinstance(child, ast.ImportFrom):
                    base = resolve(mod, path.name == "__init__.py", child)
                    for a in child.names:
                        full = f"{base}.{a.name}" if base else a.name
                        targets.append((full if full in modules else base, f))
                visit(child, f)

        visit(tree, False)
        found = {k: any(t == x or t.startswith(x + ".") for t, _ in targets for x in v) for k, v in EXTERNAL.items()}
        text = path.read_text(encoding="utf-8")
        info[mod] = {
            "lines": len(text.splitlines()),
            "chain_calls": bool(_CHAIN_CALL.search(text)),
            "function_imports": sum(1 for _, f in targets if f),
            **found,
        }
        for t, _ in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != mod and not mod.startswith(t + "."):  # a package's own __init__ is not an edge back
                edges[mod].add(t)
    return info, edges


def cycles(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, ())))))
                elif nxt in on:
                    low[v] = min(low[v], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when an import cycle exists")
    parser.add_argument("--modules", action="store_true", help="also list every module's figures")
    args = parser.parse_args()
    info, edges = scan()
    mods = sorted(info)
    lines = [int(info[m]["lines"]) for m in mods]  # type: ignore[call-overload]
    print(f"modules: {len(mods)}, lines: {sum(lines)}, largest: "
          + ", ".join(f"{m} {info[m]['lines']}" for m in sorted(mods, key=lambda m: -int(info[m]['lines']))[:5]))  # type: ignore[call-overload]
    print(f"lines per module: mean {sum(lines) // max(1, len(lines))}, max {max(lines, default=0)}")
    for key in EXTERNAL:
        users = [m for m in mods if info[m][key]]
        print(f"modules importing {key}: {len(users)}" + (f" ({', '.join(users)})" if len(users) <= 12 else ""))
    callers = [m for m in mods if info[m]["chain_calls"]]
    print(f"modules calling the chain (`.functions.`, `w3.`): {len(callers)}" + (f" ({', '.join(callers)})" if len(callers) <= 12 else ""))
    print(f"function-level imports: {sum(int(info[m]['function_imports']) for m in mods)}")  # type: ignore[call-overload]
    found = cycles(mods, edges)
    print(f"import cycles: {len(found)}" + "".join(f"\n  {' <-> '.join(c)}" for c in found))
    if args.modules:
        for m in mods:
            print(f"  {m:40} {info[m]['lines']:>5} " + " ".join(k for k in EXTERNAL if info[m][k]))
    return 1 if args.check and found else 0


if __name__ == "__main__":
    raise SystemExit(main())
