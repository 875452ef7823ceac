"""Latent actions from optical flow (Motus stage 2 pretraining, arXiv 2512.13030 section 4).

Pipeline (`motus-ros latent-actions ...`, motus_ros/commands/latent_actions.py):
  flow.py        flow between consecutive video frames (5 Hz, the dataset's `frames`), its
                 Middlebury colour-wheel image, cached per episode (episodes/<name>/flow.npz)
  flow_ae.py     deep-compression autoencoder (diffusers AutoencoderDC): flow image <-> latent tokens
  latent_vae.py  LatentActionVAE: tokens of one frame pair <-> a latent action (14 numbers), trained
                 on flow reconstruction + beta x KL + a weak alignment to the real action on a
                 labelled fraction of the pairs (0.1 by default)
  pairs.py       frame pairs, their real actions, the labelled subset, the linear probe
  training.py    resumable training of both models; labelling.py the sidecar files and the report

Only a loader for precomputed latent actions was released with the official code (its
latent_action.yaml normalises them with min/max statistics); this is a first implementation.

Contract with the trainer (written by `motus-ros latent-actions label DATA --model DIR`):

  DATA/episodes/<name>/latent_actions.npz, one per episode (all splits), np.savez, two arrays:
      latent_actions  (F-1, latent_dim) float32  raw (unnormalised) latent action of each pair of
                                                 consecutive video frames (frames[k], frames[k+1]),
                                                 k = 0 .. F-2; F = len(data.npz frames); latent_dim 14
                                                 by default (= layout.DOF)
      frame_steps     (F-1,) int64               control step of each pair's interval end, i.e.
                                                 data.npz frame_steps[1:]: row k is the latent
                                                 action that takes the scene from frames[k] to
                                                 frames[k+1], aligned (on labelled pairs) to the
                                                 absolute action at step frame_steps[k+1]
      An episode of one frame has zero rows.

  DATA/latent_action_stats.json, the normalisation of latent actions, over the pairs of the train
  split (every episode when there is none); at the top level the layout of the "action" entry of
  stats/<robot>.json:
      {"min": [D], "max": [D], "mean": [D], "std": [D],
       "names": ["latent_0", ...], "latent_dim": D, "source": str,
       "model": {"path", "fingerprint", "flow_autoencoder"}, "episodes", "pairs", "statistics_pairs",
       "video_rate_hz"}
  Normalise latent actions exactly like real ones: policy.transforms.normalize(x, stats) with stats
  = MinMax(min, max) (training/dataset.py load_latent_stats; latent_vae.load_latent_action_stats).
  During VAE training the raw latent action of a labelled pair k is pulled towards
  normalize(action[frame_steps[k+1]], the dataset's action stats): the absolute target in [0, 1]
  the action expert predicts (see pairs.pair_actions); so raw latents already lie roughly in
  [0, 1], and min/max maps them onto it exactly.

  Every episode gets its sidecar, with or without joint data (label-free episodes, "has_actions":
  false): latent actions come from the frames alone.
  Rewriting these files (a new `label` run) replaces them atomically; neither file is ever half written.
"""
