"""Fault injection: bad data, bad requests, hostile servers and interrupted runs."""
