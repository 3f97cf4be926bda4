"""A worker process: adopts the listening sockets and serves HTTP through the front ends, bridge and upstream pools."""
