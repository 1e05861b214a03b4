"""The capture service: captures authorised card payments, one logistic order at a time, with
their commission splits (DESIGN §6)."""
