"""NeRF's positional encoding."""

import torch
from torch import nn


class PositionalEncoding(nn.Module):
    """Maps each coordinate x to (x, sin(2^k x), cos(2^k x)) for k = 0 .. num_frequencies - 1, so that an MLP can
    represent detail far finer than its smooth activations alone would."""

    frequencies: torch.Tensor  # (num_frequencies,) buffer: 2^k

    def __init__(self, input_dims, num_frequencies, include_input=True):
        super().__init__()
        if num_frequencies < 0:
            raise ValueError(f"num_frequencies must be 0 or positive, got {num_frequencies}")
        self.include_input = include_input
        self.register_buffer("frequencies", 2.0 ** torch.arange(num_frequencies, dtype=torch.float32), persistent=False)
        self.output_dims = input_dims * (2 * num_frequencies + int(include_input))

    def forward(self, x):
        scaled = (x[..., None, :] * self.frequencies[:, None]).flatten(-2)
        parts = [x] if self.include_input else []
        return torch.cat(parts + [torch.sin(scaled), torch.cos(scaled)], dim=-1)
