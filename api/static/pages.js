// Small helps on the staff's pages; every page works without them (forms post as they are).
// A file field shows the chosen file's name beside our own Chinese button.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const input of document.querySelectorAll("input.file-native")) {
    const shown = document.querySelector(`.file-name[data-for="${input.id}"]`);
    input.addEventListener("change", () => {
      if (shown) shown.textContent = input.files.length ? input.files[0].name : "未选择文件";
    });
  }
});
