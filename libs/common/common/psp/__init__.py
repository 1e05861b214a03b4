"""The PSP port (`port.py`), its Adyen adapter (`adyen.py`) and Adyen's webhook HMAC
(`hmac.py`)."""
