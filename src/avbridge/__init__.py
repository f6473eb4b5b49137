"""avbridge: open-domain visual-audio generation by diffusion latent alignment."""

__version__ = "0.1.0"
