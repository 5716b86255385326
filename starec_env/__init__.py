"""STARec environment: simulated users as Gymnasium environments, recommender policies acting in them.

One import root for the whole library: `starec_env` (datasets, protocol, metrics, rewards, environments) and its
subpackages `starec_env.agents`, `starec_env.policies`, `starec_env.trainers` and `starec_env.benchmarks`.
Importing the package registers `STARec-ML1M-v0`, `STARec-CDs-v0` and `STARec-v0`, so
`gymnasium.make("starec_env:STARec-ML1M-v0")` works from any script.
"""

__version__ = "0.1.0"

from starec_env.registration import register_envs  # noqa: E402

register_envs()
