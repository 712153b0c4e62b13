"""Classification heads (softmax, ArcFace, CosFace) and the L1 weight penalty used by the trainer."""

from occluface.losses.margin import HEADS, ArcFaceHead, CosFaceHead, SoftmaxHead, create_head, l1_penalty

__all__ = ["HEADS", "ArcFaceHead", "CosFaceHead", "SoftmaxHead", "create_head", "l1_penalty"]
