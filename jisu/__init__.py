"""jisu (极速): a local, CPU-first chat assistant for Qwen2.5-0.5B-Instruct."""

__version__ = "0.1.0"
