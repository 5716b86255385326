"""STARec environment: simulated users as Gymnasium environments, recommender policies acting in them."""

__version__ = "0.1.0"
