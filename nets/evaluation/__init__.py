"""Evaluation: metrics per source and decade, degraded copies, steadiness and plots."""
