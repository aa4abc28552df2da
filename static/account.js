// Copy a new API token with one click; without a clipboard the button stays hidden.
(function () {
  "use strict";
  if (!navigator.clipboard) return;
  document.querySelectorAll("[data-copy-target]").forEach(function (button) {
    const field = document.getElementById(button.dataset.copyTarget);
    if (!field) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(field.value).then(function () {
        button.textContent = button.dataset.copiedLabel;
      });
    });
  });
})();
