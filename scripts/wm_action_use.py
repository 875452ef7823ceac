#!/usr/bin/env python3
"""How much does a world model's video loss depend on the actions it is given?

On validation windows of a converted dataset (the trainer's split and latent cache), the video
expert denoises the same noisy future latents at t_video 0.3 / 0.6 / 0.9 with clean actions
(world-model mode), once with each window's own chunk and once with the chunk of another window in
the batch. A model that uses its actions does clearly worse with the wrong chunk; one that ignores
them scores the same. Also printed: the loss of predicting zero (under video_target 'residual' and
video_prediction 'sample': "nothing moves"). Complements `motus-ros eval --counterfactual`, which
asks the same question of rendered futures in the simulator.

    OMP_NUM_THREADS=1 python scripts/wm_action_use.py --data DIR --checkpoint CKPT [--windows 64]

Uses the latent cache the trainer wrote under DIR (encodes it first if missing).
"""
from __future__ import annotations

import argparse
import sys

import torch


def main(argv: list[str]) -> int:
    from motus_ros.motus.flow import noisy_video, video_loss
    from motus_ros.training.trainer import TrainConfig, _TrainingRun, conditioning

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="converted dataset folder (as for motus-ros train)")
    p.add_argument("--checkpoint", required=True, help="model folder (a sample/residual world model)")
    p.add_argument("--preset", default="small")
    p.add_argument("--windows", type=int, default=64, help="validation windows (default 64)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    run = _TrainingRun(TrainConfig(data=a.data, out="/dev/null", preset=a.preset, init=a.checkpoint,
                                   progress=False), log=lambda s: None)
    run.load_model()
    run.load_data()
    model, table = run.model.eval(), run.val_table
    if model.config.conventions.video_prediction != "sample":
        raise SystemExit(f"{a.checkpoint}: video_prediction '{model.config.conventions.video_prediction}', "
                         "expected 'sample' (the loss below is on the predicted clean sample)")
    if table is None:
        raise SystemExit(f"{a.data}: no validation windows")
    g = torch.Generator().manual_seed(a.seed)
    idx = torch.randperm(len(table), generator=g)[: a.windows].tolist()
    sums: dict[tuple[float, str], float] = {}
    with torch.no_grad():
        for start in range(0, len(idx), 16):
            batch = table.batch(idx[start: start + 16], "cpu")
            cond = conditioning(model, batch)
            target = model.video_to_model(batch["latents"])
            n = target.shape[0]
            for tv in (0.3, 0.6, 0.9):
                t = torch.full((n,), tv)
                noisy = noisy_video(target, t, torch.randn(target.shape, generator=g))
                chunks = {"own chunk": batch["actions"], "another window's chunk": batch["actions"].roll(1, 0)}
                for name, actions in chunks.items():
                    v, _ = model.denoise(cond, noisy, t, actions, torch.zeros(n), batch["state"])
                    err = float(video_loss(model.config, v, target)) * n
                    sums[(tv, name)] = sums.get((tv, name), 0.0) + err
                zero = float(video_loss(model.config, torch.zeros_like(target), target)) * n
                sums[(tv, "predict zero")] = sums.get((tv, "predict zero"), 0.0) + zero
    print(f"video x0 MSE on {len(idx)} validation windows of {a.data} ({a.checkpoint})")
    for (tv, name), total in sorted(sums.items()):
        print(f"  t_video {tv:.1f}  {name:24s} {total / len(idx):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
