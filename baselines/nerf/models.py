"""NeRF's radiance field MLP."""

import torch
import torch.nn.functional as F
from torch import nn

from baselines.nerf.encoding import PositionalEncoding


class RadianceField(nn.Module):
    """Density from the encoded position, colour also from the encoded viewing direction; both raw (before
    their activations, applied by volume rendering).

    As in NeRF, the encoded position is fed again into the layer after the middle one, and the colour branch is a
    half-width layer on a linear feature of the trunk.
    """

    def __init__(self, depth=8, width=256, position_frequencies=10, direction_frequencies=4):
        super().__init__()
        if depth < 1 or width < 2:
            raise ValueError(f"a radiance field needs depth >= 1 and width >= 2, got depth {depth}, width {width}")
        self.position_encoding = PositionalEncoding(3, position_frequencies)
        self.direction_encoding = PositionalEncoding(3, direction_frequencies)
        encoded = self.position_encoding.output_dims
        self.skip = depth // 2 + 1
        self.trunk = nn.ModuleList(
            nn.Linear(encoded if layer == 0 else width + (encoded if layer == self.skip else 0), width)
            for layer in range(depth)
        )
        self.density_head = nn.Linear(width, 1)
        self.feature = nn.Linear(width, width)
        self.colour_layer = nn.Linear(width + self.direction_encoding.output_dims, width // 2)
        self.colour_head = nn.Linear(width // 2, 3)

    def forward(self, points, view_directions):
        """Raw colour (..., 3) and raw density (..., 1) at points (..., 3) seen along view_directions (..., 3)."""
        encoded = self.position_encoding(points)
        hidden = encoded
        for layer, linear in enumerate(self.trunk):
            if layer == self.skip:
                hidden = torch.cat([hidden, encoded], dim=-1)
            hidden = F.relu(linear(hidden))
        density = self.density_head(hidden)
        hidden = torch.cat([self.feature(hidden), self.direction_encoding(view_directions)], dim=-1)
        return self.colour_head(F.relu(self.colour_layer(hidden))), density
