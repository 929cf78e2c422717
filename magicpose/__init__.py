"""MagicPose: pose-guided human diffusion (MagicPose / MagicDance and Follow-Your-Pose)."""

__version__ = "0.1.0"
