package engine

// SetResetStep sets a function Reset tells each step it has done.
func SetResetStep(o *ResetOptions, f func(step string)) { o.step = f }
