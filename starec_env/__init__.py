"""STARec environment: simulated users as Gymnasium environments, recommender policies acting in them.

Importing the package registers `STARec-ML1M-v0` and `STARec-CDs-v0`, so
`gymnasium.make("starec_env:STARec-ML1M-v0")` works from any script.
"""

__version__ = "0.1.0"

from starec_env.envs import register_envs  # noqa: E402

register_envs()
