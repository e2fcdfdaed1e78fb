"""Bitwise A/B check of two convt_blas builds on seeded random layers.

    python tools/ab_bitwise.py record OUT.json [--cases 2000] [--seed 0]
    python tools/ab_bitwise.py compare A.json B.json

``record`` runs the cases in the convt_blas this interpreter imports (choose
the build with PYTHONPATH; the header of OUT.json names the file imported)
and stores, per case, its parameters and a sha256 of every output's shape,
dtype and bytes. ``compare`` lists the cases whose digests differ and exits
1 if any do. Both builds must run on the same BLAS kernel (the header
records it): another OpenBLAS kernel rounds differently.

Cases use only the public API (the function, ConvTranspose1d and its
load_state_dict, ConvTranspose1dStream, set_num_threads, set_winograd), so
that builds from before and after a restructuring run the same cases. Most
are tiny; about one in ten is mid-size, drawn to reach the planner's
Winograd, batch-merged, tiled and channel-blocked plans.
"""
import argparse
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections import Counter

import numpy as np

DTYPES = ("float16", "float32", "float64", "complex64", "complex128")
LAYOUTS = ("contiguous", "channels_last", "strided", "unaligned")
ENTRIES = ("function", "module", "stream")
# A record's result fields (and informational ones): the rest are the case's parameters.
RESULT_FIELDS = ("digest", "shapes", "out_dtype", "error", "plans", "seconds")
TINY_FLOPS = 4e6  # multiply-adds*2 above which a tiny case's input is shortened


# -- drawing cases ------------------------------------------------------------------

def _log_int(rng, low, high):
    """An integer in [low, high], log-uniform: small values as often as large ones."""
    return int(min(high, max(low, round(math.exp(rng.uniform(math.log(low),
                                                             math.log(high + 1)) - 0.5)))))


def _max_padding(length, k, stride, output_padding, dilation):
    """The largest padding that leaves a positive output length."""
    return max(0, ((length - 1) * stride + dilation * (k - 1) + output_padding) // 2)


def _min_length(k, stride, padding, output_padding, dilation):
    """The shortest input with a positive output length."""
    span = dilation * (k - 1) + output_padding + 1 - 2 * padding  # output length at L=1
    return 1 if span >= 1 else 1 + -(-(1 - span) // stride)


def _draw_tiny(rng):
    shape = rng.choice(["plain", "grouped", "depthwise"], p=[0.6, 0.25, 0.15])
    if shape == "depthwise":
        groups = _log_int(rng, 1, 512)
        c_in_g = c_out_g = 1
    else:
        groups = 1 if shape == "plain" else int(rng.integers(2, 9))
        # Up to 4 input channels per group take the direct-taps path, more the GEMM path.
        c_in_g = _log_int(rng, 1, int(rng.choice([16, 128, 512], p=[0.7, 0.2, 0.1])))
        c_out_g = _log_int(rng, 1, int(rng.choice([16, 128, 512], p=[0.7, 0.2, 0.1])))
        while groups * max(c_in_g, c_out_g) > 512:
            groups = max(1, groups // 2)
    k = _log_int(rng, 1, 32)
    stride = _log_int(rng, 1, 16)
    dilation = 1 if rng.random() < 0.7 else int(rng.integers(2, 5))
    length = _log_int(rng, 1, 64)
    batch = _log_int(rng, 1, 16) if rng.random() < 0.2 else int(rng.integers(1, 5))
    return dict(groups=groups, c_in_g=c_in_g, c_out_g=c_out_g, k=k, stride=stride,
                dilation=dilation, length=length, batch=batch)


def _draw_winograd(rng):
    """K == 2*stride, no dilation, >= 64 channels per group both ways, 128-1200 positions."""
    stride = int(rng.integers(1, 5))
    return dict(groups=int(rng.choice([1, 1, 2])), c_in_g=int(rng.choice([64, 80, 96, 128])),
                c_out_g=-(-64 // stride) * int(rng.integers(1, 3)), k=2 * stride,
                stride=stride, dilation=1, length=int(rng.integers(128, 1201)),
                batch=int(rng.integers(1, 3)))


def _draw_merged(rng):
    """Short deep inputs in a batch: several samples share one GEMM. Merging needs GEMMs
    past BLAS's small-matrix kernels (L*C_in/g from about 16k) and C_out/g*K >= 64."""
    return dict(groups=1, c_in_g=int(rng.choice([384, 512])),
                c_out_g=int(rng.choice([16, 32, 64, 128])), k=int(rng.choice([2, 4, 8])),
                stride=_log_int(rng, 1, 8), dilation=1, length=int(rng.integers(32, 49)),
                batch=int(rng.integers(2, 9)))


def _draw_tiled(rng):
    """Column matrices past the workspace target: cut into tiles and channel blocks."""
    return dict(groups=int(rng.choice([1, 1, 2])), c_in_g=_log_int(rng, 4, 32),
                c_out_g=int(rng.choice([64, 128, 256])), k=int(rng.choice([4, 8, 16, 32])),
                stride=_log_int(rng, 1, 8), dilation=1 if rng.random() < 0.8 else 2,
                length=int(rng.integers(256, 2049)), batch=int(rng.integers(1, 3)))


SIZE_CLASSES = (("tiny", _draw_tiny, 0.88), ("winograd", _draw_winograd, 0.05),
                ("merged", _draw_merged, 0.035), ("tiled", _draw_tiled, 0.035))


def draw_case(seed, index):
    """The parameters of case ``index``: plain JSON values, a function of (seed, index) only."""
    rng = np.random.default_rng([seed, index])
    chosen = int(rng.choice(len(SIZE_CLASSES), p=[p for _, _, p in SIZE_CLASSES]))
    size, draw, _ = SIZE_CLASSES[chosen]
    case = dict(index=index, size=size, **draw(rng))
    # Mid-size layers lean to the module, whose kept weights take plans of their own.
    case["entry"] = str(rng.choice(ENTRIES, p=[0.5, 0.3, 0.2] if size == "tiny"
                                   else [0.4, 0.4, 0.2]))
    case["dtype"] = str(rng.choice(DTYPES))
    case["layout"] = str(rng.choice(LAYOUTS, p=[0.4, 0.2, 0.2, 0.2]))
    case["batched"] = bool(size == "merged" or rng.random() < 0.8)
    if not case["batched"]:
        case["batch"] = 1
    case["bias"] = bool(rng.random() < 0.6)
    case["threads"] = int(rng.integers(1, 4))
    case["winograd"] = bool(rng.random() < (0.75 if size == "winograd" else 0.5))
    k, stride, dilation = case["k"], case["stride"], case["dilation"]
    case["output_padding"] = (0 if rng.random() < 0.6
                              else int(rng.integers(0, max(stride, dilation))))
    length = case["length"]
    if size == "tiny":  # keep tiny cases cheap whatever the channels drew
        flops_per_position = 2 * case["batch"] * case["groups"] * case["c_in_g"] * \
            case["c_out_g"] * k
        length = max(1, min(length, int(TINY_FLOPS // flops_per_position)))
    padding_cap = _max_padding(length, k, stride, case["output_padding"], dilation)
    case["padding"] = (0 if rng.random() < 0.5
                       else int(rng.integers(0, min(padding_cap, 2 * k * dilation) + 1)))
    shortest = _min_length(k, stride, case["padding"], case["output_padding"], dilation)
    length = max(length, shortest)
    if case["entry"] == "function":
        case["lengths"] = [length]
    elif case["entry"] == "module":
        # Three inputs; the 2nd and 3rd calls find the weight kept from the 1st.
        case["lengths"] = [max(shortest, int(length * f)) for f in rng.uniform(0.5, 1.0, 3)]
        case["lengths"][0] = length
        case["init"] = str(rng.choice(["rng", "loaded"]))
    else:
        # 3-5 chunks; length 0 is a valid chunk, and the signal must reach `shortest`.
        chunks = [int(c) for c in rng.integers(0, max(2, length) + 1, int(rng.integers(3, 6)))]
        if size == "winograd":  # chunks long enough for the kept F(3,2) transform
            chunks = [max(c, 128) for c in chunks]
        chunks[-1] += max(0, shortest - sum(chunks))
        case["lengths"] = chunks
    del case["length"]
    return case


# -- running cases ------------------------------------------------------------------

def _random(rng, shape, dtype):
    dtype = np.dtype(dtype)
    values = rng.standard_normal(shape)
    if dtype.kind == "c":
        values = values + 1j * rng.standard_normal(shape)
    return values.astype(dtype)


def _laid_out(x, layout, rng):
    """``x``'s values in the memory layout the case asks for."""
    if layout == "contiguous":
        return x
    if layout == "channels_last":  # length axis first in memory
        axes = tuple(range(x.ndim))[::-1] if x.ndim == 2 else (0, 2, 1)
        return x.transpose(axes).copy().transpose(axes)
    if layout == "strided":
        # A slice of a larger array: every other position, a channel offset, or reversed.
        kind = int(rng.integers(3))
        if kind == 0:
            big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
            big[..., ::2] = x
            return big[..., ::2]
        if kind == 1:
            pad = [(0, 0)] * (x.ndim - 2) + [(1, 2), (3, 1)]
            return np.pad(x, pad)[..., 1:1 + x.shape[-2], 3:3 + x.shape[-1]]
        return np.ascontiguousarray(x[..., ::-1])[..., ::-1]
    # unaligned: the same bytes one byte past an aligned address
    raw = np.zeros(x.nbytes + x.itemsize, np.uint8)
    view = raw[1:1 + x.nbytes].view(x.dtype).reshape(x.shape)
    view[...] = x
    return view


def _plans(convt_blas, case, prepared):
    """Informational tags of the plans the case's kernel calls take (not compared):
    read through the kernel's planner, when this build exposes it."""
    kernels = getattr(convt_blas, "kernels", None)
    plan_info = getattr(kernels, "_plan_info", None) or getattr(kernels, "plan_info", None)
    if plan_info is None:
        return []
    tags = set()
    c_in, c_out = case["groups"] * case["c_in_g"], case["groups"] * case["c_out_g"]
    stream = case["entry"] == "stream"
    takes_rows = getattr(kernels, "takes_weight_rows", None)
    for call, length in enumerate(case["lengths"]):
        if length == 0:
            continue
        shape = (case["batch"], c_in, length, c_out, case["k"], case["stride"],
                 0 if stream else case["padding"], 0 if stream else case["output_padding"],
                 case["dilation"], case["groups"])
        try:
            plan = plan_info(shape, prepared)
            # A layer's calls after its first on the GEMM path read its kept weight rows.
            if case["entry"] == "module" and call > 0 and takes_rows and takes_rows(shape):
                tags.add("weight_rows")
        except Exception:  # noqa: BLE001  a planner that refuses is reported by the call
            continue
        for tag, taken in (("winograd", plan.get("winograd")),
                           ("batch_merged", plan.get("samples_per_unit", 1) > 1),
                           ("depthwise_plan", plan.get("depthwise")),
                           ("tiled", plan.get("n_tiles", 1) > 1),
                           ("channel_blocked", plan.get("n_blocks", 1) > 1),
                           ("direct_taps", plan.get("direct_taps"))):
            if taken:
                tags.add(tag)
    return sorted(tags)


def run_case(convt_blas, case, seed):
    """Run one case; return its result fields (digest over all outputs, their shapes)."""
    rng = np.random.default_rng([seed, case["index"], 1])
    dtype = case["dtype"]
    groups = case["groups"]
    c_in, c_out = groups * case["c_in_g"], groups * case["c_out_g"]
    stride, padding, output_padding = case["stride"], case["padding"], case["output_padding"]
    dilation, k = case["dilation"], case["k"]
    scale = 1.0 / math.sqrt(case["c_in_g"] * k)  # keeps float16 sums in range
    weight = _random(rng, (c_in, case["c_out_g"], k), dtype) * np.asarray(scale, dtype)
    bias = _random(rng, (c_out,), dtype) if case["bias"] else None

    def draw_input(length):
        shape = (case["batch"], c_in, length) if case["batched"] else (c_in, length)
        return _laid_out(_random(rng, shape, dtype), case["layout"], rng)

    convt_blas.set_num_threads(case["threads"])
    convt_blas.set_winograd(case["winograd"])
    outputs = []
    try:
        if case["entry"] == "function":
            outputs.append(convt_blas.conv_transpose1d(
                draw_input(case["lengths"][0]), weight, bias, stride, padding, output_padding,
                groups, dilation))
        elif case["entry"] == "module":
            layer = convt_blas.ConvTranspose1d(
                c_in, c_out, k, stride, padding, output_padding, groups, case["bias"],
                dilation, dtype=np.dtype(dtype), rng=case["index"])
            if case["init"] == "loaded":
                layer.load_state_dict({"weight": weight} if bias is None
                                      else {"weight": weight, "bias": bias})
            outputs += [layer(draw_input(length)) for length in case["lengths"]]
        else:
            stream = convt_blas.ConvTranspose1dStream(weight, bias, stride, padding,
                                                      output_padding, groups, dilation)
            parts = [stream.push(draw_input(length)) for length in case["lengths"]]
            outputs.append(np.concatenate(parts + [stream.flush()], axis=-1))
        error = None
    except Exception as exc:  # noqa: BLE001  a failure is a result to compare too
        error = f"{type(exc).__name__}: {exc}"
    digest = hashlib.sha256()
    for out in outputs:
        digest.update(f"{out.shape}{out.dtype.str}".encode())
        digest.update(np.ascontiguousarray(out).tobytes())
    if error:
        digest.update(error.encode())
    return dict(digest=digest.hexdigest(), shapes=[list(out.shape) for out in outputs],
                out_dtype=str(outputs[0].dtype) if outputs else None, error=error)


def _build_commit(path):
    """The git commit (with '+dirty' for local changes) of the tree holding ``path``."""
    def git(*args):
        return subprocess.run(["git", "-C", path, *args], capture_output=True, text=True,
                              timeout=20).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("+dirty" if dirty else "")) or None


def record(path, n_cases, seed, quiet=False):
    import convt_blas

    try:
        from convt_blas import _timing
        blas = _timing.describe_blas()
    except ImportError:
        blas = None
    header = dict(convt_blas_file=convt_blas.__file__,
                  build_commit=_build_commit(os.path.dirname(convt_blas.__file__)),
                  python=platform.python_version(), numpy=np.__version__, blas=blas,
                  openblas_env={name: os.environ.get(name)
                                for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
                  seed=seed, cases=n_cases)
    if not quiet:
        print(f"convt_blas from {header['convt_blas_file']} ({header['build_commit']}); "
              f"BLAS {blas}", file=sys.stderr)
    winograd_before = convt_blas.get_winograd()
    threads_before = convt_blas.get_num_threads()
    records, start = [], time.perf_counter()
    try:
        for index in range(n_cases):
            case = draw_case(seed, index)
            case_start = time.perf_counter()
            case.update(run_case(convt_blas, case, seed))
            case["seconds"] = round(time.perf_counter() - case_start, 5)
            prepared = case["entry"] != "function"
            case["plans"] = _plans(convt_blas, case, prepared)
            records.append(case)
            if not quiet and (index + 1) % 250 == 0:
                print(f"{index + 1}/{n_cases} cases, {time.perf_counter() - start:.1f} s",
                      file=sys.stderr, flush=True)
    finally:
        convt_blas.set_winograd(winograd_before)
        convt_blas.set_num_threads(threads_before)
    header["seconds"] = round(time.perf_counter() - start, 2)
    header["summary"] = summarize(records)
    header["seconds_by_size"] = {size: round(sum(r["seconds"] for r in records
                                                 if r["size"] == size), 2)
                                 for size, _, _ in SIZE_CLASSES}
    with open(path, "w") as f:
        json.dump(dict(header=header, cases=records), f, indent=None, separators=(",", ":"))
        f.write("\n")
    if not quiet:
        print(json.dumps({k: header[k] for k in ("seconds", "seconds_by_size", "summary")},
                         indent=1))
        print(f"wrote {n_cases} cases to {path} in {header['seconds']} s", file=sys.stderr)


def summarize(records):
    """Counts of the cases per dtype, entry point, size class, plan and setting."""
    count = Counter()
    for r in records:
        count[f"dtype {r['dtype']}"] += 1
        count[f"entry {r['entry']}"] += 1
        count[f"size {r['size']}"] += 1
        count[f"layout {r['layout']}"] += 1
        count[f"threads {r['threads']}"] += 1
        count["winograd on" if r["winograd"] else "winograd off"] += 1
        count["batched" if r["batched"] else "unbatched"] += 1
        count["bias" if r["bias"] else "no bias"] += 1
        if r["groups"] > 1 and r["c_in_g"] == r["c_out_g"] == 1:
            count["depthwise (groups == C_in == C_out)"] += 1
        elif r["groups"] > 1:
            count["grouped"] += 1
        if r["dilation"] > 1:
            count["dilated"] += 1
        for tag in r.get("plans", []):
            count[f"plan {tag}"] += 1
            count[f"plan {tag} ({r['entry']})"] += 1
        if r["error"]:
            count["raised"] += 1
    return dict(sorted(count.items()))


# -- comparing ----------------------------------------------------------------------

def _params(case):
    return {k: v for k, v in case.items() if k not in RESULT_FIELDS}


def compare(path_a, path_b, show=10):
    with open(path_a) as f:
        a = json.load(f)
    with open(path_b) as f:
        b = json.load(f)
    for name, doc in (("A", a), ("B", b)):
        h = doc["header"]
        print(f"{name}: {h['convt_blas_file']} ({h.get('build_commit')}), {h['cases']} cases, "
              f"seed {h['seed']}, BLAS {h.get('blas')}, {h.get('seconds')} s")
    if a["header"].get("blas") != b["header"].get("blas"):
        print("warning: the two runs used different BLAS kernels; their rounding may differ")
    cases_a, cases_b = a["cases"], b["cases"]
    common = min(len(cases_a), len(cases_b))
    mismatched_params = [i for i in range(common) if _params(cases_a[i]) != _params(cases_b[i])]
    if mismatched_params:
        print(f"{len(mismatched_params)} cases have different parameters (other seed or "
              f"case distribution); first: {mismatched_params[:5]}")
    differ = [i for i in range(common)
              if cases_a[i]["digest"] != cases_b[i]["digest"] or i in mismatched_params]
    print(f"{common} cases compared, {len(differ)} differ")
    for i in differ[:show]:
        ca, cb = cases_a[i], cases_b[i]
        print(f"  case {i}: {json.dumps(_params(ca), separators=(',', ':'))}")
        print(f"    A: shapes {ca['shapes']} {ca.get('out_dtype')} error={ca['error']}")
        print(f"    B: shapes {cb['shapes']} {cb.get('out_dtype')} error={cb['error']}")
    if len(differ) > show:
        print(f"  ... and {len(differ) - show} more")
    if len(cases_a) != len(cases_b):
        print(f"case counts differ: {len(cases_a)} and {len(cases_b)}")
        return 1
    return 1 if differ else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run the cases here and write their digests")
    rec.add_argument("out")
    rec.add_argument("--cases", type=int, default=2000)
    rec.add_argument("--seed", type=int, default=0)
    rec.add_argument("--quiet", action="store_true")
    cmp_ = sub.add_parser("compare", help="compare two records; exit 1 if any case differs")
    cmp_.add_argument("a")
    cmp_.add_argument("b")
    cmp_.add_argument("--show", type=int, default=10, help="differing cases to list")
    args = parser.parse_args(argv)
    if args.command == "record":
        record(args.out, args.cases, args.seed, args.quiet)
        return 0
    return compare(args.a, args.b, args.show)


if __name__ == "__main__":
    sys.exit(main())
