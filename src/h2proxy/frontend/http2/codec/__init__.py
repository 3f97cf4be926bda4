"""The HTTP/2 codec: the one package that touches h2, hpack, hyperframe and priority."""
