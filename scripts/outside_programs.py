"""Programs outside the suite, timed on this device and predicted by a profile: the profile's check on code
it was not fitted to. Each program is timed in 15 interleaved rounds (the least of 5 calls per round; the median
over rounds and the least overall are kept) and predicted with `simulate` under XLA's own mapping (all fast).
The first eight are the issue's; the other twelve reach what none of the suite's programs has: a conditional,
a vmapped gradient, bfloat16, a while loop whose trip count only the data tells, top_k and argsort, a causal
mask, a transposed convolution, an associative scan, pytree arguments, a scatter in a fori_loop, remat and FFTs.

    python scripts/outside_programs.py PROFILE [OUT.json] [TIMES.json]

With TIMES.json (an earlier output) the programs are not timed: its least and median times are taken, so a
profile can be checked against times measured on a quiet machine (a program it holds no time of is left out).
The output records the load average at timing, or the stored one with TIMES.json, and a load above 1 is warned
of: on a 2-core machine the least times move by up to 40% either way under load (a depthwise convolution runs
faster with the other core busy).
"""

import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from harness.device.realization import extract_linked
from harness.model.mapping import Mapping
from harness.model.profiles import load_profile
from harness.model.simulator import simulate


def attention(q, k, v):
    s = jnp.einsum("bqd,bkd->bqk", q, k) / 8.0
    return jnp.einsum("bqk,bkd->bqd", jax.nn.softmax(s, axis=-1), v)


def convnet(x, w1, w2):
    dn = ("NHWC", "HWIO", "NHWC")
    y = jax.nn.relu(jax.lax.conv_general_dilated(x, w1, (1, 1), "SAME", dimension_numbers=dn))
    y = jax.lax.conv_general_dilated(y, w2, (2, 2), "SAME", dimension_numbers=dn)
    return y.mean(axis=(1, 2))


def rnn_grad(h0, xs, w):
    def loss(w):
        def step(h, x):
            h = jnp.tanh(h @ w + x)
            return h, h.sum()
        _, ys = jax.lax.scan(step, h0, xs)
        return ys.sum()
    return jax.grad(loss)(w)


def norm_mlp(x, w1, w2):
    x = (x - x.mean(-1, keepdims=True)) / jnp.sqrt(x.var(-1, keepdims=True) + 1e-5)
    return jax.nn.gelu(x @ w1) @ w2


def five_outputs(x):
    s = jnp.sort(x, axis=-1)
    return s, jnp.cumsum(x, axis=0), x.max(axis=1), jnp.exp(x).sum(), x.T @ x


def embed_scatter(table, ids, w):
    x = table[ids]  # a gather
    x = jax.nn.relu(x @ w)
    return jax.ops.segment_sum(x, ids % 64, num_segments=64)  # a scatter-add


def fori_mlp(x, w):
    return jax.lax.fori_loop(0, 16, lambda i, h: jnp.tanh(h @ w) + h * 0.5, x)  # a while loop, not a scan


def depthwise(x, w):
    dn = ("NHWC", "HWIO", "NHWC")
    y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn, feature_group_count=x.shape[-1])
    return jax.nn.softplus(y).sum(axis=(1, 2))


def cond_branch(x, w):
    y = x @ w
    return jax.lax.cond(y.sum() > 0, lambda y: jnp.tanh(y) @ w, lambda y: jax.nn.relu(y) * 2.0, y)


def per_example_grad(w, xs, ys):
    loss = lambda w, x, y: jnp.sum((jnp.tanh(x @ w) - y) ** 2)  # noqa: E731
    return jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))(w, xs, ys)


def bf16_block(x, w1, w2):
    h = jax.nn.gelu(x.astype(jnp.bfloat16) @ w1.astype(jnp.bfloat16)) @ w2.astype(jnp.bfloat16)
    h = h.astype(jnp.float32)
    return (h - h.mean(-1, keepdims=True)) / (h.std(-1, keepdims=True) + 1e-5)


def newton_while(x):  # square roots by Newton's method until they settle: a trip count the data decides
    def body(c):
        i, y, _ = c
        y2 = 0.5 * (y + x / y)
        return i + 1, y2, jnp.max(jnp.abs(y2 - y))
    return jax.lax.while_loop(lambda c: (c[2] > 1e-6) & (c[0] < 50), body, (0, x, jnp.float32(1.0)))[1]


def topk_argsort(x):
    v, i = jax.lax.top_k(x, 16)
    return v, i, jnp.argsort(x[:, :64], axis=-1)


def masked_attention(q, k, v):
    s = jnp.einsum("bhqd,bhkd->bhqk", q, k) / 8.0
    s = jnp.where(jnp.tril(jnp.ones((s.shape[-2], s.shape[-1]), bool)), s, -1e9)
    return jnp.einsum("bhqk,bhkd->bhqd", jax.nn.softmax(s, -1), v)


def conv_transpose(x, w):
    return jax.nn.relu(jax.lax.conv_transpose(x, w, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))


def assoc_scan(x):
    return jax.lax.associative_scan(jnp.logaddexp, x, axis=0)


def dict_io(p, x):
    h = jnp.tanh(x @ p["w1"] + p["b1"])
    return {"out": h @ p["w2"], "norm": jnp.linalg.norm(h, axis=-1)}


def scatter_loop(x, idx):
    body = lambda i, acc: acc.at[idx[i]].add(x[i] * 2.0)  # noqa: E731
    return jax.lax.fori_loop(0, idx.shape[0], body, jnp.zeros((64, x.shape[1]), jnp.float32))


def remat_grad(w, x):
    layer = jax.checkpoint(lambda h, w: jnp.tanh(h @ w))

    def loss(w):
        h = x
        for _ in range(4):
            h = layer(h, w)
        return (h ** 2).sum()
    return jax.grad(loss)(w)


def fft_filter(x):
    spectrum = jnp.fft.rfft(x, axis=-1)
    return jnp.fft.irfft(spectrum * jnp.exp(-jnp.arange(spectrum.shape[-1]) / 50.0), n=x.shape[-1], axis=-1)


def programs():
    """(name, fn, args) of each program."""
    r = np.random.default_rng(0)
    f = lambda *shape: jnp.asarray(r.standard_normal(shape), jnp.float32)
    return [
        ("attention", attention, (f(8, 256, 64), f(8, 256, 64), f(8, 256, 64))),
        ("convnet", convnet, (f(8, 32, 32, 16), f(3, 3, 16, 32), f(3, 3, 32, 32))),
        ("rnn-grad", rnn_grad, (f(16, 128), f(64, 16, 128), f(128, 128) * 0.1)),
        ("norm-mlp", norm_mlp, (f(512, 256), f(256, 1024), f(1024, 256))),
        ("five-outputs", five_outputs, (f(512, 512),)),
        ("embed-scatter", embed_scatter, (f(4096, 128), jnp.asarray(r.integers(0, 4096, 2048), jnp.int32),
                                          f(128, 256))),
        ("fori-mlp", fori_mlp, (f(64, 256), f(256, 256) * 0.05)),
        ("depthwise-conv", depthwise, (f(8, 64, 64, 32), f(5, 5, 1, 32))),
        ("cond-branch", cond_branch, (f(256, 512), f(512, 512) * 0.05)),
        ("per-example-grad", per_example_grad, (f(128, 64) * 0.1, f(64, 32, 128), f(64, 32, 64))),
        ("bf16-block", bf16_block, (f(256, 512), f(512, 1024) * 0.05, f(1024, 512) * 0.05)),
        ("newton-while", newton_while, (jnp.abs(f(512, 512)) + 1.0,)),
        ("topk-argsort", topk_argsort, (f(256, 1024),)),
        ("masked-attention", masked_attention, (f(4, 4, 256, 32), f(4, 4, 256, 32), f(4, 4, 256, 32))),
        ("conv-transpose", conv_transpose, (f(8, 16, 16, 32), f(3, 3, 32, 16))),
        ("assoc-scan", assoc_scan, (f(1024, 256),)),
        ("dict-io", dict_io, ({"w1": f(256, 512), "b1": f(512), "w2": f(512, 128)}, f(512, 256))),
        ("scatter-loop", scatter_loop, (f(128, 256), jnp.asarray(r.integers(0, 64, 128), jnp.int32))),
        ("remat-grad", remat_grad, (f(256, 256) * 0.05, f(128, 256))),
        ("fft-filter", fft_filter, (f(64, 2048),)),
    ]


def main(profile_name: str, out: str = "", times_from: str = "") -> list[dict]:
    profile = load_profile(profile_name)
    stored, stored_load = {}, None
    if times_from:
        with open(times_from) as fh:
            earlier = json.load(fh)
        stored, stored_load = {r["program"]: r for r in earlier["programs"]}, earlier.get("load_average")
    compiled = []
    for name, fn, args in programs():
        if times_from and name not in stored:
            print(f"warning: {times_from} holds no time of {name}: left out (run without TIMES.json to time it)",
                  file=sys.stderr)
            continue
        instance, _, exe = extract_linked(fn, args, name)
        run = lambda exe=exe, args=args: jax.block_until_ready(exe(*args))
        run()
        everything = Mapping({b.id: 0 for b in instance.buffers}, len(instance.buffers), name, "xla-native")
        compiled.append((name, run, simulate(instance, everything, profile)))
    load = os.getloadavg()[0]
    if not stored and load > 1.0:
        print(f"warning: load average {load:.2f}: other processes share the cores, and on a 2-core machine the "
              "least times move by up to 40% either way under load; time on a quiet machine", file=sys.stderr)
    if stored:
        times = {name: (stored[name]["least_s"], stored[name]["median_s"]) for name, _, _ in compiled}
    else:
        rounds = {name: [] for name, _, _ in compiled}
        for _ in range(15):
            for name, run, _ in compiled:
                calls = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    run()
                    calls.append(time.perf_counter() - t0)
                rounds[name].append(min(calls))
        times = {name: (min(r), float(np.median(r))) for name, r in rounds.items()}
    rows = []
    for name, _, predicted in compiled:
        least, median = times[name]
        rows.append({"program": name, "least_s": least, "median_s": median, "predicted_s": predicted,
                     "error_vs_least": predicted / least - 1, "error_vs_median": predicted / median - 1})
        print(f"{name:14s} least {least * 1e3:8.3f} ms  median {median * 1e3:8.3f} ms  predicted {predicted * 1e3:8.3f} ms"
              f"  error {predicted / least - 1:+.0%} (vs median {predicted / median - 1:+.0%})")
    if out:
        with open(out, "w") as fh:
            json.dump({"profile": profile.name, "times_from": times_from or None,
                       "load_average": stored_load if stored else load, "programs": rows}, fh, indent=1)
    return rows


if __name__ == "__main__":
    main(*sys.argv[1:])
