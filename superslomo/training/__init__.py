"""Training (PyTorch, never on the inference path): the loop, the RIFE teacher, synthetic motion
with exact flows, and the campaign that resumes across sessions."""
