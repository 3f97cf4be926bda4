"""Counters, histograms and access-log records: plain data shared by the worker, the bridge and the supervisor."""
