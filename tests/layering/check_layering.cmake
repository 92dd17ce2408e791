# The layering of the sources (README, "Layout"), lowest first:
#   nn/, ops/, models/  the layer library: LibTorch only, nothing from
#                       data/, train/ or experiments/, no toml++ or zlib;
#   data/, train/       the training library: nothing from experiments/;
#   experiments/        sweeps and reports, over the training library.
# Headers and sources both; fails naming each offending line.
#   cmake -DROOT=<source tree> -P check_layering.cmake
set(checked 0)
set(failures "")
# Files of `groups` (under include/diffstride/ and src/) whose lines match
# `pattern` are violations of the rule `what`.
function(check_rule what pattern)
  set(files)
  foreach(group ${ARGN})
    file(GLOB_RECURSE found ${ROOT}/include/diffstride/${group}/*.h
         ${ROOT}/src/${group}/*.h ${ROOT}/src/${group}/*.cpp)
    list(APPEND files ${found})
  endforeach()
  set(violations "")
  foreach(file ${files})
    file(STRINGS ${file} lines REGEX "${pattern}")
    foreach(line ${lines})
      string(APPEND violations "\n  ${file}: ${line}")
    endforeach()
  endforeach()
  list(LENGTH files count)
  math(EXPR total "${checked} + ${count}")
  set(checked ${total} PARENT_SCOPE)
  if(violations)
    set(failures "${failures}\n${what}:${violations}" PARENT_SCOPE)
  endif()
endfunction()

set(include_of "^[ \t]*#[ \t]*include[ \t]*[<\"](diffstride/)?")
check_rule("layers and models must not include data or training code"
  "${include_of}(data|train|experiments)/|^[ \t]*#[ \t]*include[ \t]*<(toml\\+\\+|zlib)"
  nn ops models)
check_rule("data and training code must not include experiments code"
  "${include_of}experiments/"
  data train)
if(checked EQUAL 0)
  message(FATAL_ERROR "no source files under ${ROOT}")
endif()
if(failures)
  message(FATAL_ERROR "layering violated:${failures}")
endif()
message(STATUS "layering: ${checked} files of nn/, ops/, models/, data/ and train/ checked")
