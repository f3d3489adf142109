#!/usr/bin/env python3
"""PyTorch CPU reference for bench/layers.ts: the same tf.layers-style CNN (see there), SGD with momentum 0.9, on random
28×28×1 inputs, timed by bench/torch_step.py's runner (one JSON line: median and minimum seconds per step, NCHW and
channels_last, every CPU thread). Never a test dependency.
"""
from torch_step import run


def main() -> None:
    run(
        lambda nn: nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.BatchNorm2d(64, eps=1e-3, momentum=0.01), nn.Dropout(0.25),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
            nn.Linear(576, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10),
        ),
        (1, 28, 28),
        lambda torch, net: torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9),
    )


if __name__ == "__main__":
    main()
