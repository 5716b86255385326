"""Teacher distillation, SFT anchoring and GRPO on simulated feedback rollouts."""
