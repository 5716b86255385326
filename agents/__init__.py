"""The cognitive user agent: memory, fast and slow thinking, the population graph, and the one LLM interface."""
