def forward(self, x):
    check_input = attnspec_runtime_check_input(x, 'x', (('B', None), ('N', None), ('D', 32)));  x = None
    unsqueeze = check_input.unsqueeze(1);  check_input = None
    key_memory = self.key_memory(unsqueeze);  unsqueeze = None
    softmax = torch.softmax(key_memory, dim = -2);  key_memory = None
    sum_1 = softmax.sum(dim = -1, keepdim = True)
    add = sum_1 + 1e-09;  sum_1 = None
    truediv = softmax / add;  softmax = add = None
    value_memory = self.value_memory(truediv);  truediv = None
    squeeze = value_memory.squeeze(1);  value_memory = None
    return squeeze
