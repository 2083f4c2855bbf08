"""What commands do: interpolate a video, bench, train, resolve a model. Above every stage; cli.py
only parses options and calls these."""
