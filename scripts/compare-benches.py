#!/usr/bin/env python3
"""Compares two ways of running the same bench from their results databases (SQLite), cell by cell.

  compare-benches.py halving DB      a bench run with --search halving into a copy of a finished grid bench's
                                     database: per cell, the configuration each search chose, their test top-1,
                                     agreement (same configuration, or test within 0.5 points) and compute
                                     (training images = epochs x images of the search runs, and with the finals).
  compare-benches.py precision A B   two benches of one profile in two precisions (fp32 in A, bf16 in B): per cell
                                     the test top-1 of each, mean and largest |difference|, changed choices.
  compare-benches.py ranking A.md B.md
                                     two bench summaries (summary.md, or a README with the bench table): the methods'
                                     order by mean of group means in each, and Spearman's rho between them (tied
                                     values share their mean rank), over the methods both rank.

Cells are (task, method, backbone); the selection rule is BestConfiguration's (val top-1 desc, lr, wd, hyper asc).
"""
import json
import re
import sqlite3
import sys


def images(split):
    # "train800[:160]" -> 160, "train800[:160]+val200[:40]" -> 200, "train800" -> 800, "train800val200" -> 1000
    total = 0
    for part in split.split("+"):
        m = re.search(r"\[:(\d+)\]$", part)
        total += int(m.group(1)) if m else {"train800": 800, "val200": 200, "train800val200": 1000}[part]
    return total


def rows(db):
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    return [dict(r) for r in con.execute(
        "select stage, dataset, method, checkpoint, sweep_id, hyper_json, lr, weight_decay, epochs, train_split, "
        "training_json, top1, seed from runs where status = 'finished'")]


def order(r):
    return (-r["top1"], r["lr"], r["weight_decay"], r["hyper_json"].encode())


def config(r):
    return (r["lr"], r["weight_decay"], r["hyper_json"])


def describe(r):
    hypers = json.loads(r["hyper_json"]).get(r["method"], {})
    return f"lr {r['lr']:g}" + "".join(f", {k} {v}" for k, v in sorted(hypers.items()))


def cell_name(r):
    return f"{r['dataset']} {r['method']}" + (" (random-init)" if r["checkpoint"] == "random-init" else "")


def halving(db):
    runs = rows(db)
    cells = {}
    for r in runs:
        cells.setdefault(r["sweep_id"], []).append(r)
    agree = same = total = not_worse = 0
    deltas = []
    grid_images = halving_images = final_images = 0
    for sweep, rs in sorted(cells.items()):
        grid = [r for r in rs if r["stage"] == "search" and '"rung"' not in r["training_json"]]
        rungs = [r for r in rs if r["stage"] == "search" and '"rung"' in r["training_json"]]
        finals = {config(r): r for r in rs if r["stage"] == "final" and r["seed"] == 42}
        if not grid or not rungs:
            continue
        last = max(json.loads(r["training_json"])["rung"] for r in rungs)
        chosen_h = sorted((r for r in rungs if json.loads(r["training_json"])["rung"] == last), key=order)[0]
        chosen_g = sorted(grid, key=order)[0]
        test_g, test_h = finals[config(chosen_g)]["top1"] * 100, finals[config(chosen_h)]["top1"] * 100
        is_same = config(chosen_g) == config(chosen_h)
        ok = is_same or abs(test_h - test_g) <= 0.5 + 1e-9
        total += 1
        same += is_same
        deltas.append(test_h - test_g)
        not_worse += test_h >= test_g - 0.5 - 1e-9
        agree += ok
        grid_images += sum(r["epochs"] * images(r["train_split"]) for r in grid)
        halving_images += sum(r["epochs"] * images(r["train_split"]) for r in rungs)
        final_images += finals[config(chosen_g)]["epochs"] * images(finals[config(chosen_g)]["train_split"])
        if not is_same:
            print(f"{cell_name(chosen_g):40s} grid {describe(chosen_g):22s} {test_g:6.2f}  halving {describe(chosen_h):22s} {test_h:6.2f}"
                  f"  {'within 0.5' if ok else 'DIFFERS'}")
    print(f"cells {total}: same configuration {same}, agreement (same or within 0.5 test points) {agree} = {100 * agree / total:.1f} %")
    print(f"test top-1 halving − grid: mean {sum(deltas) / total:+.2f} points; halving at least as good (≥ grid − 0.5) in {not_worse} = {100 * not_worse / total:.1f} %")
    print(f"search training images: halving {halving_images:,} / grid {grid_images:,} = {100 * halving_images / grid_images:.1f} %; "
          f"with the finals: {100 * (halving_images + final_images) / (grid_images + final_images):.1f} %")


def precision(db_a, db_b):
    def finals(db):
        return {(r["dataset"], r["method"], r["checkpoint"]): r for r in rows(db) if r["stage"] == "final" and r["seed"] == 42}
    a, b = finals(db_a), finals(db_b)
    cells = sorted(set(a) & set(b))
    deltas = [(b[c]["top1"] - a[c]["top1"]) * 100 for c in cells]
    changed = [c for c in cells if config(a[c]) != config(b[c])]
    worst = max(range(len(cells)), key=lambda i: abs(deltas[i]))
    print(f"cells {len(cells)}: mean Δ (B − A) {sum(deltas) / len(deltas):+.2f} points, mean |Δ| {sum(abs(d) for d in deltas) / len(deltas):.2f}, "
          f"largest |Δ| {abs(deltas[worst]):.2f} ({cell_name(a[cells[worst]])}: {a[cells[worst]]['top1'] * 100:.2f} → {b[cells[worst]]['top1'] * 100:.2f})")
    same_cfg = [d for c, d in zip(cells, deltas) if c not in changed]
    print(f"the same configuration chosen in {len(same_cfg)} cells: mean |Δ| {sum(abs(d) for d in same_cfg) / max(1, len(same_cfg)):.2f}, "
          f"largest {max((abs(d) for d in same_cfg), default=0):.2f}; another one in {len(changed)}")
    methods = sorted({c[1] for c in cells})
    print("| method | mean Δ | largest |Δ| |")
    print("|---|---|---|")
    for m in methods:
        ds = [d for c, d in zip(cells, deltas) if c[1] == m and c[2] != "random-init"]
        if ds:
            print(f"| {m} | {sum(ds) / len(ds):+.2f} | {max(abs(d) for d in ds):.2f} |")


def group_means(path):
    # The bench table's rows: "| tier | method | natural | specialized | structured | **mean** (CI) | ...".
    means = {}
    for line in open(path, encoding="utf-8"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 5 and cells[0].isdigit():
            m = re.match(r"\*\*([0-9.]+)\*\*", cells[5])
            if m:
                means.setdefault(cells[1], float(m.group(1)))
    return means


def ranks(values):
    order = sorted(range(len(values)), key=lambda i: -values[i])
    result = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            result[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return result


def spearman(x, y):
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    return cov / (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5


def ranking(path_a, path_b):
    a, b = group_means(path_a), group_means(path_b)
    methods = sorted(set(a) & set(b), key=lambda m: -a[m])
    print("| method | A | rank A | B | rank B |")
    print("|---|---|---|---|---|")
    ra, rb = ranks([a[m] for m in methods]), ranks([b[m] for m in methods])
    for m, x, y in zip(methods, ra, rb):
        print(f"| {m} | {a[m]:.2f} | {x:g} | {b[m]:.2f} | {y:g} |")
    print(f"{len(methods)} methods: Spearman rho = {spearman([a[m] for m in methods], [b[m] for m in methods]):.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "halving":
        halving(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "precision":
        precision(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "ranking":
        ranking(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
