"""Suppression-list rebuild: legacy import, address normalisation, policy, build, diff, exports."""
