"""What commands do: interpolate a video (here, on Triton, on Ray), resolve a model and its weights
record, measure scales, bench. Above every stage; cli.py only parses options and calls these."""
