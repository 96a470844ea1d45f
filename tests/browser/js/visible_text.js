() => {
  const codes = [...document.querySelectorAll('code')];
  codes.forEach(c => { c.dataset.was = c.style.display; c.style.display = 'none'; });
  const parts = [document.body.innerText];
  codes.forEach(c => { c.style.display = c.dataset.was; });
  document.querySelectorAll('svg text').forEach(t => parts.push(t.textContent));
  document.querySelectorAll('option').forEach(o => parts.push(o.textContent));
  document.querySelectorAll('[placeholder],[aria-label],[title]').forEach(e => {
    for (const a of ['placeholder', 'aria-label', 'title']) {
      if (e.getAttribute(a)) parts.push(e.getAttribute(a));
    }
  });
  parts.push(document.title);
  return parts.join('\n');
}
