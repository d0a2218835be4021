// Original file: src/api/proto/tether/v1/tether.proto


export interface ShellSize {
  'cols'?: (number);
  'rows'?: (number);
}

export interface ShellSize__Output {
  'cols': (number);
  'rows': (number);
}
