"""Scale-out on existing engines: a Triton Inference Server model repository and its client;
Ray batch jobs over keyframe segments."""
