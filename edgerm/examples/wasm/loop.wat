;; loop.wat: a WASI command that never ends (an infinite loop). Stopped only
;; by a time limit or a kill, both delivered through the engine's epoch.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $forever
      (br $forever))))
