"""Recommender policies behind one protocol: `name`, `fit(train)`, `score(cases) -> (B, C)`."""
