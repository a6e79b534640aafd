// Repeat a task every `ms` without overlapping runs: the next run is scheduled only when
// the previous one settled, so a slow API never piles up requests.

export function every(ms, task, onError) {
  let timer = null;
  let stopped = false;

  async function run() {
    try {
      await task();
    } catch (error) {
      if (!stopped && onError) onError(error);
    }
    if (!stopped) timer = setTimeout(run, ms);
  }

  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
