"""Tools around the proxy, outside its runtime package: the attack audit, the demo origin, the development certificate."""
