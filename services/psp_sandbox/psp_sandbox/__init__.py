"""A stand-in PSP speaking a subset of Adyen's Checkout API, for development and tests only.

It is not a PSP and never moves money: state lives in memory and is lost on restart.
"""
