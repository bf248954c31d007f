"""Finite groups acting on images and feature maps (pure maths: no ``torch.nn``)."""
