"""Anchored reinforcement training: teacher distillation → SFT → GRPO on rollouts from the environment."""
