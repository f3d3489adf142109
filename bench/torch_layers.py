#!/usr/bin/env python3
"""PyTorch CPU reference for bench/layers.ts: the same tf.layers-style CNN (see there), SGD with momentum 0.9, on random
28×28×1 inputs. Prints one JSON line as bench/torch_step.py does (median and minimum seconds per step, NCHW and
channels_last, every CPU thread). Never a test dependency.
"""
import json
import os
import sys
import time


def main() -> None:
    import torch
    from torch import nn

    torch.set_num_threads(int(os.environ.get("DKFAC_TORCH_THREADS", os.cpu_count() or 1)))
    torch.manual_seed(0)
    batches = [int(b) for b in (sys.argv[1:] or ["256"])]
    steps = int(os.environ.get("DKFAC_TORCH_STEPS", "12"))
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "rows": []}
    for fmt in ("nchw", "channels_last"):
        for b in batches:
            net = nn.Sequential(
                nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                nn.BatchNorm2d(64, eps=1e-3, momentum=0.01), nn.Dropout(0.25),
                nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                nn.Linear(576, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10),
            )
            x = torch.rand(b, 1, 28, 28)
            if fmt == "channels_last":
                net = net.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            y = torch.arange(b) % 10
            opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
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


if __name__ == "__main__":
    main()
