"""The supervisor process: twistd's service, listening sockets, worker generations, signals, admin listener."""
