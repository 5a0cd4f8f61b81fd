package worker

// SetEndedHook makes Run call f once its end is visible to WaitRegistered,
// before it returns: a test can hold Run's goroutine there, as a scheduler
// may, to restart Run in that window.
func SetEndedHook(w *Worker, f func()) { w.testHookEnded = f }
