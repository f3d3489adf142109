#!/usr/bin/env python3
"""PyTorch CPU reference for `npm run bench` (bench/backend.ts runs it when Debian's python3-torch is installed).

The same network and batch as bench/backend.ts's CNN: conv3x3x32 'same' - relu - maxpool2 - conv3x3x64 'same' - relu -
maxpool2 - dense 4096→256 - relu - dense 256→10, softmax cross-entropy, plain SGD, on random 32×32×3 inputs. Prints one
JSON line: the median and minimum seconds per SGD step per batch size, for PyTorch's default memory format (NCHW) and
channels_last, with every CPU thread (as the native engine uses). Never a test dependency.
"""
import json
import os
import sys
import time


def run(make_net, input_shape, make_opt) -> None:
    """Times SGD steps of make_net() on random inputs of input_shape (C, H, W) per batch size of argv, in NCHW and
    channels_last; prints the JSON line. Shared with bench/torch_layers.py."""
    import torch
    from torch import nn

    threads = int(os.environ.get("DKFAC_TORCH_THREADS", os.cpu_count() or 1))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    batches = [int(b) for b in (sys.argv[1:] or ["32", "128"])]
    steps = int(os.environ.get("DKFAC_TORCH_STEPS", "12"))
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "mkldnn": torch.backends.mkldnn.is_available(), "rows": []}
    for fmt in ("nchw", "channels_last"):
        for b in batches:
            net = make_net(nn)
            x = torch.rand(b, *input_shape)
            if fmt == "channels_last":
                net = net.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            y = torch.arange(b) % 10
            opt = make_opt(torch, net)
            ts = []
            for i in range(steps + 3):
                t0 = time.perf_counter()
                opt.zero_grad()
                loss = nn.functional.cross_entropy(net(x), y)
                loss.backward()
                opt.step()
                loss.item()
                if i >= 3:
                    ts.append(time.perf_counter() - t0)
            ts.sort()
            out["rows"].append({"format": fmt, "batch": b, "median_s": ts[len(ts) // 2], "min_s": ts[0]})
    print(json.dumps(out))


def main() -> None:
    run(
        lambda nn: nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(4096, 256), nn.ReLU(), nn.Linear(256, 10),
        ),
        (3, 32, 32),
        lambda torch, net: torch.optim.SGD(net.parameters(), lr=0.01),
    )


if __name__ == "__main__":
    main()
