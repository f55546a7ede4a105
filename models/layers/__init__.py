"""Keras layers of the model library; each registered for SavedModel round trips."""

from models.layers.aitm_tower import AITMTower
from models.layers.mlp import MLP
from models.layers.tag_embedding import TagEmbedding

__all__ = ["AITMTower", "MLP", "TagEmbedding"]
