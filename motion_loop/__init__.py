"""motion_loop: seamless looping human motion from text (MDM + DiffCollage)."""

__version__ = "0.1.0"
