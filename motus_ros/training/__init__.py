"""Training Motus on converted episodes: dataset windows, latent cache, the accelerate loop."""
