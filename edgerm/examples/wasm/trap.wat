;; trap.wat: a WASI command that traps at once (unreachable).
(module
  (memory (export "memory") 1)
  (func (export "_start")
    unreachable))
