"""Kiosk program: rotating QR, scanner and Bluetooth check-in with a durable offline queue."""

__version__ = "0.1.0"
