"""The distillation loop: the Distiller (engine/distiller.py), the context a method sees of it (context.py), the
loop's behaviours as callbacks (callbacks.py) and its stopwatch (timing.py)."""
