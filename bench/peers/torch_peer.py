#!/usr/bin/env python3
"""The PyTorch peer of `fisher bench` (src/bench/torch.ts runs it).

Computes the empirical Fisher (diagonal or full) of a ReLU MLP with a
softmax/categorical likelihood, in float32, in one of two formulations:

  batched  manual back-propagation over chunks of the data: the diagonal is
           (delta^2)^T (a^2) per layer, the full matrix G^T G of the
           per-sample gradient rows G (the best formulation PyTorch's ops allow);
  vmap     vmap(grad(loss)) over the samples (torch.func, or functorch on
           PyTorch 1.13), squared and summed, or G^T G.

Structure kfac (batched only, any network): the K-FAC factors from the
layers' inputs and output gradients of one backward pass per chunk, as a
K-FAC optimiser's hooks collect them.

For any other network (the benchmark's cnn and resnet), the request holds
fisher-gpu's model spec and the parameters' names and shapes, and the folder
theta.f32 [P] in parameter order. Both formulations run there through a
functional interpreter of the spec written with torch.nn.functional:
vmap(grad) per sample, and batched as BackPACK does it (one backward pass
of the summed loss, then each layer's per-sample gradients from its input,
unfolded into patches for conv2d, and the gradient at its output).

Usage: torch_peer.py REQUEST.json. The request names a folder holding the
inputs as raw little-endian files: x.f32 [n, inputs], y.i32 [n], and per
layer l = 1..L, W{l}.f32 [out, in] and b{l}.f32 [out]. The Fisher, divided
by n and in fisher-gpu's parameter order (W1, b1, W2, b2, ...), is written
to fisher.f32 in that folder, and one JSON line goes to stdout:
{"seconds", "warmup", "device", "version", "blas", "threads"} or
{"skipped": reason}. Timings exclude the first (warm-up) run; on CUDA each
run ends with a synchronisation.
"""
import json
import os
import sys
import time

import numpy as np
import torch

try:  # PyTorch 2
    from torch.func import grad, vmap
except ImportError:  # PyTorch 1.13
    from functorch import grad, vmap


def blas_library():
    """Which BLAS this process loaded: Debian chooses libblas.so.3 by alternatives."""
    names = {'blas': 'reference BLAS', 'openblas-pthread': 'OpenBLAS (pthreads)', 'openblas-openmp': 'OpenBLAS (OpenMP)', 'openblas-serial': 'OpenBLAS (serial)'}
    try:
        with open('/proc/self/maps') as maps:
            dirs = {os.path.basename(os.path.dirname(line.split()[-1])) for line in maps if '/libblas.so.3' in line}
    except OSError:
        return 'unknown'
    return ', '.join(sorted(names.get(d, d) for d in dirs)) or 'none mapped (torch may link its own)'


def load(folder, name, dtype, shape):
    return torch.from_numpy(np.fromfile(os.path.join(folder, name), dtype=dtype).reshape(shape))


def batched_fisher(params, x, y, structure, chunk):
    layers = len(params) // 2
    p = sum(t.numel() for t in params)
    total = torch.zeros(p if structure == 'diag' else (p, p), dtype=torch.float64, device=x.device)
    for s0 in range(0, x.shape[0], chunk):
        a = x[s0:s0 + chunk]
        labels = y[s0:s0 + chunk]
        inputs, pre = [], []
        for l in range(layers):
            inputs.append(a)
            z = torch.addmm(params[2 * l + 1], a, params[2 * l].t())
            pre.append(z)
            a = torch.relu(z) if l + 1 < layers else z
        delta = torch.softmax(a, dim=1)
        delta[torch.arange(delta.shape[0], device=x.device), labels] -= 1.0
        blocks = []
        for l in reversed(range(layers)):
            if structure == 'diag':
                d2 = delta * delta
                blocks[:0] = [(d2.t() @ (inputs[l] * inputs[l])).reshape(-1), d2.sum(0)]
            else:
                rows = (delta[:, :, None] * inputs[l][:, None, :]).reshape(delta.shape[0], -1)
                blocks[:0] = [rows, delta]
            if l > 0:
                delta = (delta @ params[2 * l]) * (pre[l - 1] > 0)
        if structure == 'diag':
            total += torch.cat(blocks)
        else:
            g = torch.cat(blocks, dim=1)
            total += g.t() @ g
    return total / x.shape[0]


def vmap_fisher(params, x, y, structure, chunk):
    layers = len(params) // 2

    def loss(ps, xi, yi):
        a = xi
        for l in range(layers):
            z = ps[2 * l] @ a + ps[2 * l + 1]
            a = torch.relu(z) if l + 1 < layers else z
        return -torch.gather(torch.log_softmax(a, dim=0), 0, yi[None]).sum()

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))
    p = sum(t.numel() for t in params)
    total = torch.zeros(p if structure == 'diag' else (p, p), dtype=torch.float64, device=x.device)
    for s0 in range(0, x.shape[0], chunk):
        grads = per_sample(tuple(params), x[s0:s0 + chunk], y[s0:s0 + chunk])
        g = torch.cat([t.reshape(t.shape[0], -1) for t in grads], dim=1)
        total += (g * g).sum(0) if structure == 'diag' else g.t() @ g
    return total / x.shape[0]


def run_layers(layers, params, x, batched=False, record=None):
    """x through fisher-gpu's spec (DESIGN.md section 4), PyTorch's functions, its names.

    One sample, or with `batched` a batch on dimension 0. `record`, where
    given, collects (layer, input, output) of every layer with parameters,
    the outputs kept in the graph with their gradients retained."""
    import torch.nn.functional as F
    pair = lambda v: tuple(v) if isinstance(v, list) else (v, v)
    one = (lambda f, v: f(v)) if batched else (lambda f, v: f(v[None])[0])
    for layer in layers:
        t = layer['type']
        w = params.get(f"{layer.get('name')}.weight")
        b = params.get(f"{layer.get('name')}.bias")
        given = x
        if t == 'linear':
            x = F.linear(x, w, b)
        elif t == 'conv2d':
            x = one(lambda v: F.conv2d(v, w, b, pair(layer['stride']), pair(layer['padding']), pair(layer['dilation']), layer['groups']), x)
        elif t == 'maxpool2d':
            x = one(lambda v: F.max_pool2d(v, pair(layer['kernel_size']), pair(layer['stride']), pair(layer['padding'])), x)
        elif t == 'avgpool2d':
            x = one(lambda v: F.avg_pool2d(v, pair(layer['kernel_size']), pair(layer['stride']), pair(layer['padding']), count_include_pad=True), x)
        elif t == 'flatten':
            x = x.reshape(x.shape[0], -1) if batched else x.reshape(-1)
        elif t == 'layernorm':
            shape = layer['normalized_shape']
            x = F.layer_norm(x, shape if isinstance(shape, list) else [shape], w, b, layer['eps'])
        elif t == 'residual':
            x = x + run_layers(layer['layers'], params, x, batched, record)
        elif t == 'relu':
            x = torch.relu(x)
        elif t == 'tanh':
            x = torch.tanh(x)
        elif t == 'sigmoid':
            x = torch.sigmoid(x)
        elif t == 'gelu':
            x = F.gelu(x)
        elif t != 'identity':
            raise ValueError(f'layer type {t} is not in the interpreter')
        if record is not None and w is not None:
            x.retain_grad()
            record.append((layer, given, x))
    return x


def layer_sample_gradients(layer, given, out):
    """Per-sample gradients {name: [n, *shape]} of one layer from its input and
    the gradient at its output: the unfold formulation (BackPACK's), sum over
    positions t of delta_t a_t^T, with im2col patches from F.unfold."""
    import torch.nn.functional as F
    name, t, delta, n = layer['name'], layer['type'], out.grad, out.shape[0]
    pair = lambda v: tuple(v) if isinstance(v, list) else (v, v)
    grads = {}
    if t == 'linear':
        d = delta.reshape(n, -1, delta.shape[-1])
        a = given.reshape(n, -1, given.shape[-1])
        grads[f'{name}.weight'] = torch.einsum('nto,nti->noi', d, a)
        if layer.get('bias', True):
            grads[f'{name}.bias'] = d.sum(1)
    elif t == 'conv2d':
        groups, cout = layer['groups'], delta.shape[1]
        patches = F.unfold(given, pair(layer['kernel_size']), pair(layer['dilation']), pair(layer['padding']), pair(layer['stride']))
        d = delta.reshape(n, groups, cout // groups, -1)
        a = patches.reshape(n, groups, patches.shape[1] // groups, -1)
        w = torch.einsum('ngol,ngkl->ngok', d, a)
        grads[f'{name}.weight'] = w.reshape(n, cout, -1)
        if layer.get('bias', True):
            grads[f'{name}.bias'] = d.sum(3).reshape(n, cout)
    elif t == 'layernorm':
        shape = layer['normalized_shape']
        dims = tuple(range(-(len(shape) if isinstance(shape, list) else 1), 0))
        mean = given.mean(dims, keepdim=True)
        var = given.var(dims, unbiased=False, keepdim=True)
        xhat = (given - mean) / torch.sqrt(var + layer['eps'])
        lead = lambda v: v.reshape(n, -1, *v.shape[given.dim() - len(dims):]).sum(1)
        grads[f'{name}.weight'] = lead(delta * xhat)
        grads[f'{name}.bias'] = lead(delta)
    else:
        raise ValueError(f'layer type {t} has no per-sample gradient here')
    return grads


def network_batched_fisher(spec, names, params, x, y, structure, chunk):
    """The batched formulation for any network: one forward and one backward
    of the summed loss per chunk (per-sample losses are independent, so the
    output gradients are per-sample), then per-layer per-sample gradients by
    unfold and einsum, squared and summed (or G^T G)."""
    import torch.nn.functional as F
    p = sum(t.numel() for t in params.values())
    total = torch.zeros(p if structure == 'diag' else (p, p), dtype=torch.float64, device=x.device)
    # Parameters that require gradients put every recorded output in the graph.
    leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
    for s0 in range(0, x.shape[0], chunk):
        record = []
        logits = run_layers(spec['layers'], leaves, x[s0:s0 + chunk], True, record)
        F.cross_entropy(logits, y[s0:s0 + chunk], reduction='sum').backward()
        grads = {}
        for layer, given, out in record:
            grads.update(layer_sample_gradients(layer, given.detach(), out))
        g = torch.cat([grads[name].reshape(grads[name].shape[0], -1) for name in names], dim=1)
        total += (g * g).sum(0) if structure == 'diag' else g.t() @ g
    return total / x.shape[0]


def network_vmap_fisher(spec, names, params, x, y, structure, chunk):
    def loss(ps, xi, yi):
        logits = run_layers(spec['layers'], ps, xi)
        return -torch.gather(torch.log_softmax(logits, dim=0), 0, yi[None]).sum()

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))
    p = sum(t.numel() for t in params.values())
    total = torch.zeros(p if structure == 'diag' else (p, p), dtype=torch.float64, device=x.device)
    for s0 in range(0, x.shape[0], chunk):
        grads = per_sample(params, x[s0:s0 + chunk], y[s0:s0 + chunk])
        g = torch.cat([grads[name].reshape(grads[name].shape[0], -1) for name in names], dim=1)
        total += (g * g).sum(0) if structure == 'diag' else g.t() @ g
    return total / x.shape[0]


def network_batched_kfac(spec, names, params, x, y, mode, chunk):
    """K-FAC by the batched formulation (the hooks' quantities of a K-FAC
    optimiser): each linear and conv2d layer's inputs (unfolded into patches
    for conv2d) and output gradients from one backward pass of the summed
    loss per chunk, A = mean of [a, 1][a, 1]^T over the rows (N*T under
    expand, N under reduce, the per-sample mean patch) and G = (1/N) sum of
    delta delta^T (reduce: the per-sample sum over positions); the layers
    K-FAC does not factor (layer norm, grouped conv2d) get their exact
    diagonal from per-sample gradients. Returns the tensors flattened in
    fisher-gpu's output order."""
    import torch.nn.functional as F
    pair = lambda v: tuple(v) if isinstance(v, list) else (v, v)
    leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
    sums, rows = {}, {}
    order = []
    for s0 in range(0, x.shape[0], chunk):
        record = []
        logits = run_layers(spec['layers'], leaves, x[s0:s0 + chunk], True, record)
        F.cross_entropy(logits, y[s0:s0 + chunk], reduction='sum').backward()
        for layer, given, out in record:
            name, t, n = layer['name'], layer['type'], out.shape[0]
            if s0 == 0:
                order.append(layer)
            factored = t == 'linear' or (t == 'conv2d' and layer['groups'] == 1)
            if not factored:
                grads = layer_sample_gradients(layer, given.detach(), out)
                for key, g in grads.items():
                    sums[key] = sums.get(key, 0) + (g.double() ** 2).sum(0)
                continue
            if t == 'linear':
                a = given.detach().reshape(n, -1, given.shape[-1])
                d = out.grad.reshape(n, -1, out.shape[-1])
            else:
                a = F.unfold(given.detach(), pair(layer['kernel_size']), pair(layer['dilation']), pair(layer['padding']), pair(layer['stride'])).transpose(1, 2)
                d = out.grad.reshape(n, out.shape[1], -1).transpose(1, 2)
            if mode == 'reduce':
                a, d = a.mean(1, keepdim=True), d.sum(1, keepdim=True)
            a = a.reshape(-1, a.shape[-1]).double()
            if layer.get('bias', True):
                a = torch.cat([a, torch.ones(a.shape[0], 1, dtype=a.dtype, device=a.device)], dim=1)
            d = d.reshape(-1, d.shape[-1]).double()
            sums[name + '.A'] = sums.get(name + '.A', 0) + a.t() @ a
            sums[name + '.G'] = sums.get(name + '.G', 0) + d.t() @ d
            rows[name] = rows.get(name, 0) + a.shape[0]
        for v in leaves.values():
            v.grad = None
    out = []
    for layer in order:
        name = layer['name']
        if name in rows:
            out += [(sums[name + '.A'] / rows[name]).reshape(-1), (sums[name + '.G'] / x.shape[0]).reshape(-1)]
        else:
            out += [sums[key].reshape(-1) / x.shape[0] for key in names if key.startswith(name + '.')]
    return torch.cat(out)


def main():
    # FISHER_GPU_TORCH_THREADS sets torch's intra-op threads; by default torch chooses, as its users get it.
    if os.environ.get('FISHER_GPU_TORCH_THREADS'):
        torch.set_num_threads(int(os.environ['FISHER_GPU_TORCH_THREADS']))
    with open(sys.argv[1]) as f:
        req = json.load(f)
    folder, n = req['folder'], req['n']
    device = torch.device('cuda' if req['device'] == 'auto' and torch.cuda.is_available() else req['device'].replace('auto', 'cpu'))
    y = load(folder, 'y.i32', np.int32, (n,)).long().to(device)
    if 'spec' in req:
        # Any network: its input shape, and the parameters by name from theta.f32.
        x = load(folder, 'x.f32', np.float32, (n, *req['spec']['input'])).to(device)
        theta = load(folder, 'theta.f32', np.float32, (-1,)).to(device)
        names, params, at = [], {}, 0
        for entry in req['parameters']:
            size = int(np.prod(entry['shape']))
            names.append(entry['name'])
            params[entry['name']] = theta[at:at + size].reshape(entry['shape'])
            at += size
        p = at
        spec = req['spec']
        formulation = network_batched_fisher if req['formulation'] == 'batched' else network_vmap_fisher
        if req['structure'] == 'kfac':
            run = lambda ps, xs, ys, structure, c: network_batched_kfac(spec, names, params, xs, ys, req['kfac'], c)
        else:
            run = lambda ps, xs, ys, structure, c: formulation(spec, names, params, xs, ys, structure, c)
    else:
        widths = req['widths']
        x = load(folder, 'x.f32', np.float32, (n, widths[0])).to(device)
        params = []
        for l in range(1, len(widths)):
            params.append(load(folder, f'W{l}.f32', np.float32, (widths[l], widths[l - 1])).to(device))
            params.append(load(folder, f'b{l}.f32', np.float32, (widths[l],)).to(device))
        p = sum(t.numel() for t in params)
        run = batched_fisher if req['formulation'] == 'batched' else vmap_fisher
    # Chunks small enough that the per-sample rows (full, vmap) stay within ~256 MiB.
    per_sample_floats = p if (req['structure'] == 'full' or req['formulation'] == 'vmap' or 'spec' in req) else sum(req['widths'])
    chunk = max(1, min(4096, (64 << 20) // per_sample_floats))

    def timed(m):
        if device.type == 'cuda':
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad() if req['formulation'] == 'batched' and 'spec' not in req else torch.enable_grad():
            out = run(params, x[:m], y[:m], req['structure'], chunk)
        if device.type == 'cuda':
            torch.cuda.synchronize()
        return out, time.perf_counter() - t0

    # Warm-up on a prefix; it also estimates the whole run against the budget.
    prefix = min(n, max(chunk, 1000))
    _, warmup = timed(prefix)
    _, again = timed(prefix)
    estimate = again * n / prefix
    info = {'device': str(device), 'version': torch.__version__, 'blas': blas_library(), 'threads': torch.get_num_threads()}
    if estimate > req['budget_seconds']:
        print(json.dumps({'skipped': f"estimated {estimate:.0f} s from {prefix} samples, over the {req['budget_seconds']:g} s budget", **info}))
        return
    fisher, seconds = timed(n)
    fisher.to(torch.float32).cpu().numpy().tofile(os.path.join(folder, 'fisher.f32'))
    print(json.dumps({'seconds': seconds, 'warmup': warmup, **info}))


if __name__ == '__main__':
    main()
